"""The OpenAI-compatible gateway: admission, API keys and limits, routing to engines, proxying."""
