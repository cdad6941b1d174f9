"""The gguf step: merge the adapter, convert with llama.cpp, quantize, smoke-test, write a Modelfile."""
