"""PI-REC models: ``networks`` (generator, discriminator) and ``losses`` (adversarial, L1, VGG)."""
