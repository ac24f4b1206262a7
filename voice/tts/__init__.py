"""Text-to-speech engines behind the `voice.ports.Synthesizer` seam (Piper English, FastSpeech2 Mandarin)."""
