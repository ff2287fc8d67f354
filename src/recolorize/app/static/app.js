// recolorize web app: two drop zones, a strength slider that re-renders a preview (the server keeps
// the predicted latents, so only the generator runs), a before/after comparison, a full-size download and
// the look as a 3D LUT (.cube) for editors.
// Everything talks to the local server that served this page; nothing else is contacted.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const roles = ["source", "reference"];
  const state = {
    files: { source: null, reference: null },
    id: null, // the server's upload id for the current pair
    preview: null, // {width, height} of the preview images
    uploadGen: 0, // increases with every upload, so stale answers are ignored
    wanted: null, // strength the slider asks for
    rendered: null, // strength of the image on screen
    rendering: false,
    maxUpload: 40e6,
    view: "compare",
  };

  const strength = $("strength");
  const strengthValue = $("strength-value");
  const download = $("download");
  const downloadLut = $("download-lut");
  // Both downloads need a prepared pair and share the model with the preview: on and off together.
  function setDownloadsDisabled(off) {
    download.disabled = off;
    downloadLut.disabled = off;
  }
  const resultImg = $("result-img");
  const beforeImg = $("before-img");
  const compare = $("compare");
  const viewport = compare.parentElement;

  // ------------------------------------------------------------------ messages
  function setStatus(text) { $("status").textContent = text || ""; }
  function showError(text) {
    const box = $("error");
    box.textContent = text;
    box.hidden = !text;
    if (text) document.body.dataset.state = "error";
  }
  function setBusy(text) {
    $("busy").hidden = !text;
    $("busy-text").textContent = text || "";
  }
  const mb = (n) => (n / 1e6).toFixed(1) + " MB";
  // A size and its limit in MB, with as many decimals as it takes for them not to read the same.
  function mbPair(size, limit) {
    for (let digits = 1; digits < 7; digits++) {
      const a = (size / 1e6).toFixed(digits), b = (limit / 1e6).toFixed(digits);
      if (a !== b) return [a + " MB", b.replace(/0+$/, "").replace(/\.$/, ".0") + " MB"]; // 1.0, not 1.00000
    }
    return [`${size} bytes`, `${limit} bytes`];
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      if (body && body.error) return body.error;
    } catch (e) { /* not JSON */ }
    return `the server answered ${response.status} ${response.statusText}`;
  }

  // ------------------------------------------------------------------ config
  fetch("/api/config").then((r) => r.json()).then((cfg) => {
    state.maxUpload = cfg.max_upload_bytes;
    const m = cfg.model || {};
    $("model-info").textContent = `model ${m.config || "?"} · ${m.resolution || "?"} px · ${m.device || "cpu"}`;
    $("limits-note").textContent =
      `Your images never leave this computer: they are processed by the local server and kept in memory only. ` +
      `Up to ${mb(cfg.max_upload_bytes)} and ${(cfg.max_pixels / 1e6).toFixed(0)} megapixels per image.`;
  }).catch(() => {});

  // ------------------------------------------------------------------ drop zones
  for (const role of roles) {
    const zone = $(`${role}-drop`);
    const input = $(`${role}-input`);
    input.addEventListener("change", () => {
      if (input.files && input.files[0]) setFile(role, input.files);
      input.value = "";
    });
    zone.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
    });
    zone.addEventListener("dragenter", (e) => { e.preventDefault(); zone.classList.add("dragover"); });
    zone.addEventListener("dragover", (e) => { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; });
    zone.addEventListener("dragleave", (e) => {
      if (!zone.contains(e.relatedTarget)) zone.classList.remove("dragover");
    });
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("dragover");
      if (e.dataTransfer.files && e.dataTransfer.files[0]) setFile(role, e.dataTransfer.files);
    });
  }
  // a drop that misses the zones must not navigate away from the page
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  // The source takes one file; the reference up to MAX_REFERENCES (the server looks for each region's best
  // match in all of them).
  const MAX_REFERENCES = 4;
  function setFile(role, fileList) {
    const files = Array.from(fileList).slice(0, role === "reference" ? MAX_REFERENCES : 1);
    const file = files[0];
    const zone = $(`${role}-drop`);
    const thumb = zone.querySelector(".thumb");
    const total = files.reduce((sum, f) => sum + f.size, 0);
    zone.querySelector(".drop-name").textContent = `${files.map((f) => f.name).join(" + ")} · ${mb(total)}`;
    zone.classList.add("filled");
    zone.classList.remove("invalid");
    if (thumb.dataset.url) URL.revokeObjectURL(thumb.dataset.url);
    thumb.dataset.url = URL.createObjectURL(file); // local only: a blob: URL never leaves the browser
    thumb.onerror = () => { thumb.hidden = true; }; // e.g. TIFF, which browsers cannot show
    thumb.onload = () => { thumb.hidden = false; };
    thumb.src = thumb.dataset.url;
    const big = files.find((f) => f.size > state.maxUpload);
    if (big) {
      state.files[role] = null;
      zone.classList.add("invalid");
      const [size, limit] = mbPair(big.size, state.maxUpload);
      showError(`The ${role} image (${big.name}) is ${size}; the limit is ${limit}.`);
      return;
    }
    state.files[role] = role === "reference" ? files : file;
    showError("");
    if (state.files.source && state.files.reference) upload();
    else setStatus(`Now choose the ${state.files.source ? "reference" : "source"} photo.`);
  }

  // ------------------------------------------------------------------ upload + prepare
  async function upload() {
    const gen = ++state.uploadGen;
    state.id = null; // no renders of the previous pair while this one is prepared
    document.body.dataset.state = "uploading";
    showError("");
    setBusy("Predicting colours…");
    setStatus("Uploading and predicting…");
    setDownloadsDisabled(true);
    const form = new FormData();
    form.append("source", state.files.source, state.files.source.name);
    for (const ref of state.files.reference) form.append("reference", ref, ref.name);
    let info;
    try {
      const response = await fetch("/api/prepare", { method: "POST", body: form });
      if (gen !== state.uploadGen) return;
      if (!response.ok) {
        const text = await errorText(response);
        markInvalid(text);
        throw new Error(text);
      }
      info = await response.json();
    } catch (err) {
      if (gen !== state.uploadGen) return;
      setBusy("");
      setStatus("");
      showError(err.message || String(err));
      return;
    }
    if (gen !== state.uploadGen) return;
    state.id = info.id;
    state.preview = { width: info.preview_width, height: info.preview_height };
    state.rendered = null;
    $("dims").textContent = `${info.source_name || "source"} · ${info.width} × ${info.height} px`;
    const src = `/api/source/${info.id}`;
    beforeImg.src = src;
    $("side-before").src = src;
    strength.disabled = false;
    setStatus(`Predicted in ${info.seconds.toFixed(2)} s.`);
    layoutCompare();
    requestRender();
  }

  function markInvalid(text) {
    for (const role of roles) {
      if (text.toLowerCase().includes(`the ${role} image`)) $(`${role}-drop`).classList.add("invalid");
    }
  }

  // ------------------------------------------------------------------ strength -> preview render
  strength.addEventListener("input", () => {
    strengthValue.textContent = Number(strength.value).toFixed(2);
    requestRender();
  });

  function requestRender() {
    if (!state.id) return;
    state.wanted = strength.value;
    if (!state.rendering) renderLoop();
  }

  // One request at a time; when it returns, render again only if the slider moved meanwhile.
  async function renderLoop() {
    state.rendering = true;
    try {
      while (state.id && state.wanted !== state.rendered) {
        const value = state.wanted;
        const id = state.id;
        const gen = state.uploadGen;
        document.body.dataset.state = "rendering";
        setBusy("Rendering…");
        const response = await fetch(`/api/render/${id}?strength=${encodeURIComponent(value)}`);
        if (gen !== state.uploadGen) continue; // a new pair was dropped meanwhile
        if (response.status === 410) { upload(); return; } // the server dropped the pair: send it again
        if (!response.ok) throw new Error(await errorText(response));
        const seconds = response.headers.get("X-Render-Seconds");
        const blob = await response.blob();
        if (gen !== state.uploadGen) continue;
        await showResult(blob, value);
        state.rendered = value;
        setStatus(`Preview rendered in ${Number(seconds).toFixed(2)} s at strength ${Number(value).toFixed(2)}.`);
      }
      if (state.id) {
        document.body.dataset.state = "ready";
        setDownloadsDisabled(false);
      }
    } catch (err) {
      showError(err.message || String(err));
    } finally {
      state.rendering = false;
      if (document.body.dataset.state !== "uploading") setBusy("");
    }
  }

  function showResult(blob, value) {
    return new Promise((resolve) => {
      const url = URL.createObjectURL(blob);
      const old = resultImg.dataset.url;
      resultImg.onload = () => {
        if (old) URL.revokeObjectURL(old);
        resolve();
      };
      resultImg.onerror = () => resolve();
      resultImg.dataset.url = url;
      resultImg.src = url;
      $("side-after").src = url;
      resultImg.dataset.strength = value;
      $("empty").hidden = true;
      showView(state.view);
    });
  }

  // ------------------------------------------------------------------ downloads
  // Fetch /api/KIND/ID at the slider's strength and save it under the server's file name (RFC 6266).
  async function saveDownload(kind, busyText, statusText, fallbackName) {
    if (!state.id) return;
    setDownloadsDisabled(true);
    setBusy(busyText);
    setStatus(statusText);
    const value = strength.value;
    try {
      const response = await fetch(`/api/${kind}/${state.id}?strength=${encodeURIComponent(value)}`);
      if (!response.ok) throw new Error(await errorText(response));
      const disposition = response.headers.get("Content-Disposition") || "";
      const match = /filename="([^"]+)"/.exec(disposition);
      const encoded = /filename\*=UTF-8''([^;\s]+)/i.exec(disposition); // RFC 6266: the exact name
      let name = match ? match[1] : fallbackName;
      try {
        if (encoded) name = decodeURIComponent(encoded[1]);
      } catch (err) {
        // a malformed encoding: keep the plain (ASCII) name
      }
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = name;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      setStatus(`Downloaded ${a.download} (${mb(blob.size)}).`);
    } catch (err) {
      showError(err.message || String(err));
    } finally {
      setBusy("");
      setDownloadsDisabled(!state.id);
    }
  }

  download.addEventListener("click", () =>
    saveDownload("download", "Rendering full resolution…", "Rendering the full-resolution image…",
      "recolorized.png"));
  // The look as a 33×33×33 LUT: the server fits it to the transfer at this strength (recolorize lut's way).
  downloadLut.addEventListener("click", () =>
    saveDownload("lut", "Fitting the look…", "Fitting the look as a 3D LUT (.cube)…", "recolorized.cube"));

  // ------------------------------------------------------------------ views
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => showView(tab.dataset.view));
  }

  function showView(view) {
    state.view = view;
    for (const tab of document.querySelectorAll(".tab")) {
      const on = tab.dataset.view === view;
      tab.classList.toggle("active", on);
      tab.setAttribute("aria-selected", String(on));
    }
    const hasResult = Boolean(resultImg.dataset.url);
    compare.hidden = !(hasResult && view === "compare");
    $("side").hidden = !(hasResult && view === "side");
    layoutCompare();
  }

  // The comparison box takes the preview's aspect ratio, as large as the viewport allows.
  function layoutCompare() {
    if (!state.preview) return;
    const pad = 16;
    const w = viewport.clientWidth - 2 * pad;
    const h = viewport.clientHeight - 2 * pad;
    const scale = Math.min(w / state.preview.width, h / state.preview.height);
    compare.style.width = `${Math.max(1, Math.floor(state.preview.width * scale))}px`;
    compare.style.height = `${Math.max(1, Math.floor(state.preview.height * scale))}px`;
  }
  new ResizeObserver(layoutCompare).observe(viewport);

  // ------------------------------------------------------------------ before/after handle
  const handle = $("handle");
  function setPosition(percent) {
    const p = Math.max(0, Math.min(100, percent));
    compare.style.setProperty("--pos", `${p}%`);
    handle.setAttribute("aria-valuenow", String(Math.round(p)));
  }
  function fromPointer(e) {
    const box = compare.getBoundingClientRect();
    setPosition(((e.clientX - box.left) / box.width) * 100);
  }
  compare.addEventListener("pointerdown", (e) => {
    compare.setPointerCapture(e.pointerId);
    fromPointer(e);
    handle.focus();
  });
  compare.addEventListener("pointermove", (e) => {
    if (compare.hasPointerCapture(e.pointerId)) fromPointer(e);
  });
  handle.addEventListener("keydown", (e) => {
    const now = Number(handle.getAttribute("aria-valuenow"));
    const step = e.shiftKey ? 10 : 2;
    if (e.key === "ArrowLeft") setPosition(now - step);
    else if (e.key === "ArrowRight") setPosition(now + step);
    else if (e.key === "Home") setPosition(0);
    else if (e.key === "End") setPosition(100);
    else return;
    e.preventDefault();
  });
})();
