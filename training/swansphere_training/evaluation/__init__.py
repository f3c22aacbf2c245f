"""Evaluations shared by the training stages and the ``swansphere eval`` commands."""
