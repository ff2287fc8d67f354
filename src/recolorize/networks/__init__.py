"""The paper's networks: G/G' (generator), E_w and E_W (encoders), P_W (W-predictor) and frozen backbones."""
