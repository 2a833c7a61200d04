"""Eight public-domain and CC0 photos that install with edgedml: what ``edgedml export`` checks
fp16 graphs against fp32 on when it is given no folder of images (see README.md here for each
photo's source and licence, and :func:`edgedml.export.image_sets.shipped_validation_folder`)."""
