"""sser_lobes: SpeechBrain lobes for speech emotion recognition with SSL encoders."""

__version__ = "0.1.0"
