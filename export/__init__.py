"""PyTorch -> ONNX: the source model, the export, and its validation against PyTorch."""
