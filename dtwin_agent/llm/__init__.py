"""LLM and VLM plumbing.

Provider strings -> chat models, structured calls with one repair round-trip, pure parsers of model
output, usage accounting and the prompt files (package data in ``prompts/``).
"""
