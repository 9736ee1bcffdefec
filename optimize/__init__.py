"""Fusion passes: BERT subgraphs into ONNX Runtime's com.microsoft transformer ops."""
