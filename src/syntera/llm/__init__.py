"""Chat models behind one interface: any OpenAI-compatible endpoint by URL, and the
embedded local model (SmolLM2-135M-Instruct) in the shared model process."""
