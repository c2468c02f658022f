"""One kit for every HTML report: the page shell with its single style sheet (`page`),
tables and text blocks (`tables`), and matplotlib figures embedded as PNG (`figures`).

Each report producer (data validation, the data profile and feature report, the model
evaluation) builds its sections with these and writes one self-contained page.
"""
