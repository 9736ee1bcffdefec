"""INT8 quantization of the fused graph for the CPU provider."""
