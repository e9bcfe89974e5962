"""Space-specific passes (forward, backward of Σ y, noised inputs, loss) run by the engine."""
