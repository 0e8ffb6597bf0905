"""The interceptor: a thin mitmproxy addon that asks for verdicts and applies them."""
