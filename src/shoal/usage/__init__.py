"""Usage: prices, token estimates, budgets and the meter that records every generation."""
