"""What every collector builds its metric families with."""


def family(cls, name, doc, labels, rows):
    """A metric family of type ``cls`` holding ``rows`` of (label values, value)."""
    fam = cls(name, doc, labels=labels)
    for label_values, value in rows:
        fam.add_metric(label_values, value)
    return fam
