"""The composition root: builds Shoal's services from settings and the catalog.

The only package that knows every concrete class (backends, limit stores, the
router); everything else depends on the protocols in ``shoal.core``.
"""
