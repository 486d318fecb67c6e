"""Processors of pydantic_style."""
