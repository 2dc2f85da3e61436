"""Pure domain logic shared by the services: folds of the customer and agent streams and
the decisions on them. No I/O, no framework, no clock: time and new ids are passed in."""
