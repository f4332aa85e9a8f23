"""Export stage: ONNX graphs with parity checks, the ONNX Runtime encoder, OpenSearch ML Commons packages."""
