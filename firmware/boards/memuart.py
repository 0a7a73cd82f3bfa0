"""A UART over two byte buffers (pump/hal.py's uart): what a virtual board or a test gives
the firmware instead of machine.UART. The host side feeds rx and takes tx."""


class MemUart:
    def __init__(self):
        self.rx = bytearray()        # host -> firmware
        self.tx = bytearray()        # firmware -> host

    def feed(self, data):
        self.rx += data

    def read(self, n=-1):
        if not self.rx:
            return None
        if n is None or n < 0 or n > len(self.rx):
            n = len(self.rx)
        out = bytes(self.rx[:n])
        self.rx = self.rx[n:]
        return out

    def any(self):
        return len(self.rx)

    def write(self, b):
        self.tx += b
        return len(b)

    def take(self):
        out = bytes(self.tx)
        self.tx = bytearray()
        return out
