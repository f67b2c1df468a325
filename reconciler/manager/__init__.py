"""The manager's tools: stamp, publish, validate, plan."""
