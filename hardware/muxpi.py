"""MuxPi pin, bus and colour constants, each cited against docs/."""

from __future__ import annotations

from typing import Final

# docs/muxpi.md §uarts: NanoPi UART2 <-> STM USART1, 115200 8N1, no flow control.
STM_PORT: Final = "/dev/ttyS2"
STM_BAUD: Final = 115200

# docs/muxpi.md §oled: the OLED is on the STM's SPI1, 128x32, 8x16 font.
OLED_WIDTH: Final = 128
OLED_HEIGHT: Final = 32
FONT_WIDTH: Final = 8
FONT_HEIGHT: Final = 16

# docs/muxpi.md §gpio: sysfs numbers are gpiochip0 lines on today's sunxi kernels,
# but a pending kernel change may renumber them, so profiles take these as defaults only.
GPIO_CHIP: Final = "gpiochip0"
LINE_GREEN_LED: Final = 6  # PA6, STATUS_LED1, active high
LINE_RED_LED: Final = 2  # PA2, STATUS_LED2, active high
LINE_PWR_CTRL: Final = 3  # PA3, MuxPi board power including the STM, 1 = on
LINE_STM_BOOT0: Final = 203  # PG11, 0 = run firmware, 1 = STM ROM bootloader

# Header pins of the same lines (NanoPi NEO 2x12 header), used for the gpiozero board table.
HEADER_PIN: Final = {LINE_GREEN_LED: 12, LINE_RED_LED: 13, LINE_PWR_CTRL: 15, LINE_STM_BOOT0: 7}

# docs/muxpi.md §rgb leds: colours of Boruta's dryad (boruta:dryad/muxpi.go).
YELLOW: Final = (96, 144, 0)
RED: Final = (128, 0, 0)
GREEN: Final = (0, 128, 0)
BLUE: Final = (0, 0, 128)
PINK: Final = (128, 16, 32)
OFF: Final = (0, 0, 0)

# docs/stm-protocol.md §boot state: the firmware's boot splash, drawn at x=5 on pages 0 and 2.
SPLASH: Final = ("  *  MuxPi  *  ", "HW: 1.0 SW: 1.0")
FIRMWARE_VERSION: Final = "MuxPi firmware v1.0"
