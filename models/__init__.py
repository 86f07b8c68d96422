"""One package per feature type: its network, its checkpoint records and its preprocessing.

``models.registry`` holds what a package declares and the one registry of feature types.
"""
