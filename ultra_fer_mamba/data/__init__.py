"""Datasets in: the 7 expression classes in the paper's order, name matching, converters and a synthetic set.

Every dataset this package writes or reads uses class ids 0..6 in the order of ``FER_CLASSES`` (the order the
FER-YOLO-Mamba paper reports its per-class results in). Source datasets name their classes differently
(RAF-DB says "Happiness", SFEW's folders say "Angry"); ``class_index`` maps any such name to its id.

Examples:
    >>> from ultra_fer_mamba.data import FER_CLASSES, class_index
    >>> FER_CLASSES[class_index(" angry ")]
    'Anger'
    >>> class_index("Contempt") is None
    True
"""

from __future__ import annotations

FER_CLASSES = ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")

# other spellings met in RAF-DB, SFEW, FER2013 and the original code's class files (lower case)
FER_ALIASES = {
    "angry": "Anger",
    "disgusted": "Disgust",
    "fearful": "Fear",
    "happiness": "Happy",
    "sadness": "Sad",
    "surprised": "Surprise",
}

_INDEX = {name.lower(): i for i, name in enumerate(FER_CLASSES)}
_INDEX.update({alias: _INDEX[name.lower()] for alias, name in FER_ALIASES.items()})


def class_index(name: str) -> int | None:
    """Return the id (0..6) of an expression name, or None when it is not one of the 7 classes.

    Matching ignores case and surrounding whitespace and accepts the aliases in ``FER_ALIASES``.

    Args:
        name (str): A class name as a dataset spells it, e.g. ``"Happiness"`` or ``"angry "``.

    Returns:
        (int | None): Index into ``FER_CLASSES``, or None for an unknown name.

    Examples:
        >>> class_index("Surprised"), class_index("NEUTRAL")
        (6, 4)
    """
    return _INDEX.get(name.strip().lower())


__all__ = ("FER_ALIASES", "FER_CLASSES", "class_index")
