"""Evaluation of the triage engine: statement cases (`carecall eval`), whole simulated conversations
(`carecall simulate`), their case files and their figures. Measures the engine; changes nothing in it."""
