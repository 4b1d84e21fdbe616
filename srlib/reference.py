"""Published numbers this study is compared with (x4, PSNR dB / SSIM), quoted from their sources.

Source of each: ../shared/reference/published-results.md of the project's shared material, which cites
the papers. These are yardsticks for tables, never used to compute anything.
"""

# Wu's Table 1. The paper does not state its protocol; its code follows the public SRGAN code,
# whose evaluation is what srlib calls the 'paper' protocol (RGB in [0, 1], whole image).
PAPER_TABLE1 = {
    "SRGAN (Wu, Table 1)": {"Set5": (28.63, 0.83), "Set14": (25.49, 0.73), "BSD100": (25.56, 0.69),
                            "Urban100": (25.45, 0.72)},
    "New model (Wu, Table 1)": {"Set5": (26.73, 0.84), "Set14": (23.57, 0.73), "BSD100": (23.70, 0.69),
                                "Urban100": (21.33, 0.72)},
}

# Standard protocol (Y channel, border shaved, MATLAB bicubic LR).
PUBLISHED_STANDARD = {
    "Bicubic (ESRGAN suppl. Table 2)": {"Set5": (28.42, 0.8104), "Set14": (26.00, 0.7027),
                                        "BSD100": (25.96, 0.6675), "Urban100": (23.14, 0.6577)},
    "SRResNet (Ledig et al., Table 2)": {"Set5": (32.05, 0.9019), "Set14": (28.49, 0.8184),
                                         "BSD100": (27.58, 0.7620)},
    "SRGAN (Ledig et al., Table 2)": {"Set5": (29.40, 0.8472), "Set14": (26.02, 0.7397),
                                      "BSD100": (25.16, 0.6688)},
}
