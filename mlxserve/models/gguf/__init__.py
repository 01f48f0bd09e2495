"""GGUF files (llama.cpp / Ollama) converted once into a cached Hugging Face folder."""
