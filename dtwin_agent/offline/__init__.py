"""The embedded no-network profile.

What "offline" resolves to, the local LLM server, the offline labeller and its ImageNet classifier,
and the keyword reasoner.
"""
