"""Forensics: detectors over stored runs, health scores, scan, analyze, doctor, environment audit."""
