"""Margin-based softmax losses for face recognition (see face_losses)."""
