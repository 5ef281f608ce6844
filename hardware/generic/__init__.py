"""The generic board: DUT power, SD switch, status and button from configured backends.

A lab without a MuxPi describes its board in the ``[generic]`` table
(docs/generic-board.md §configuration): ``config`` parses it (pure, no third-party
imports), ``power``, ``sdmux``, ``status`` and ``button`` are the backends, ``stm``
presents power and SD switch as the ``Stm`` interface that ``stm`` and ``fota`` use,
and ``board`` opens them all or none. gpiozero, luma and usbsdmux are imported only
inside the backend that needs them, so a board loads only what it has fitted.
"""
