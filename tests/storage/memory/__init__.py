"""Tests of the in-memory backend beyond the behaviour suite."""
