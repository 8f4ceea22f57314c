"""What the speculative-decoding tests share: code a model is asked to repeat (so n-gram lookup has something to find)."""

CODE = '''def area(width, height):
    return width * height


def perimeter(width, height):
    return 2 * (width + height)


def describe(width, height):
    return f"{width}x{height}: area {area(width, height)}, perimeter {perimeter(width, height)}"
'''

REPEAT_CODE = "Repeat this code exactly, then say done:\n\n" + CODE
"""A prompt whose answer quotes the prompt: lookup drafts, and a draft model's drafts are accepted."""
