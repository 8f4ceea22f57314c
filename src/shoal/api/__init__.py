"""HTTP front-ends: one package per API, plus the model catalog."""
