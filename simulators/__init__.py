"""The simulated plant: numpy line model, fault injection, scenarios and protocol servers."""
