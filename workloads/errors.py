"""Exception types shared by the workload modules."""


class DataError(Exception):
    """Data that is missing, invalid or could not be obtained.

    The message names the failing file, folder or value and the remedy.
    """
