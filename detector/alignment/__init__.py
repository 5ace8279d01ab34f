"""Aligned verification: a listing photo put into the geometry of its best reference of the claimed
brand (keypoints, ratio test, MAGSAC homography), then compared region by region at working
resolution. Pure NumPy/OpenCV, no model: every backbone gets the same signals."""
