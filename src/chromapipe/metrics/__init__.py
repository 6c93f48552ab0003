"""Image-quality metrics on sRGB uint8 (PSNR, SSIM, LPIPS, FID or a named FD proxy, colorfulness), the
typed record they are stored in, and the predictors they score.

A foundation package: it depends on ``color`` and ``weights`` only, so the prepare stage (colorfulness
filter), training (validation during training), the evaluate stage and ``chromapipe score`` share one
implementation of every number.
"""
