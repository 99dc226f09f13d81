"""The plant layer: the tick (runtime), device poll loops, the tag store, line samples and the
in-memory trend ring. Imports core and drivers; knows nothing of delivery or the web."""
