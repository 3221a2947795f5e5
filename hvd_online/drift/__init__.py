"""Concept drift: detectors on the prequential loss, and the response when one fires."""
