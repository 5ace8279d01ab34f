"""The gallery's search index (see ``gallery_index``) and the recipe that shapes it."""

from detector.index.brand_vectors import BrandVectors
from detector.index.gallery_index import GalleryIndex, Hits
from detector.index.recipe import DEFAULT_INDEX_RECIPE, IndexRecipe

__all__ = ["BrandVectors", "DEFAULT_INDEX_RECIPE", "GalleryIndex", "Hits", "IndexRecipe"]
