"""Schemas: where writer schemas come from and how they map onto table schemas."""
