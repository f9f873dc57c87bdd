"""Developer tools: synthetic fixtures and detector-quality evaluation."""
