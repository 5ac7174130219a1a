/*
 * Polled 16550 UART output for the pykexec purgatory.
 *
 * Only used when the loader sets console_serial.  The port is programmed for
 * 8 data bits, no parity, 1 stop bit, FIFOs and interrupts off, DTR and RTS
 * asserted.  The divisor latch is only written when serial_baud is non-zero;
 * otherwise the rate the previous kernel left is kept.  "\n" goes out as
 * "\r\n".
 */
#include "purgatory.h"

#define UART_CLOCK_DIV 115200u	/* 1.8432 MHz / 16 */

/* Register offsets from serial_base. */
#define UART_THR 0	/* transmit holding (DLAB=0) */
#define UART_DLL 0	/* divisor low (DLAB=1) */
#define UART_IER 1	/* interrupt enable (DLAB=0) */
#define UART_DLM 1	/* divisor high (DLAB=1) */
#define UART_FCR 2	/* FIFO control */
#define UART_LCR 3	/* line control */
#define UART_MCR 4	/* modem control */
#define UART_LSR 5	/* line status */

#define LCR_8N1 0x03
#define LCR_DLAB 0x80
#define MCR_DTR_RTS 0x03
#define LSR_THRE 0x20

/* Give up waiting for a transmitter slot after this many polls (no UART present). */
#define UART_SPIN_LIMIT 100000u

static inline void outb(uint16_t port, uint8_t value)
{
	__asm__ __volatile__("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t value;

	__asm__ __volatile__("inb %1, %0" : "=a"(value) : "Nd"(port));
	return value;
}

void serial_init(void)
{
	uint16_t base = serial_base;

	outb(base + UART_IER, 0);
	if (serial_baud) {
		uint32_t divisor = UART_CLOCK_DIV / serial_baud;

		if (divisor == 0)
			divisor = 1;
		outb(base + UART_LCR, LCR_DLAB);
		outb(base + UART_DLL, (uint8_t)divisor);
		outb(base + UART_DLM, (uint8_t)(divisor >> 8));
	}
	outb(base + UART_LCR, LCR_8N1);
	outb(base + UART_FCR, 0);
	outb(base + UART_MCR, MCR_DTR_RTS);
}

static void serial_putc_raw(char c)
{
	uint16_t base = serial_base;
	uint32_t spins;

	for (spins = 0; spins < UART_SPIN_LIMIT; spins++) {
		if (inb(base + UART_LSR) & LSR_THRE)
			break;
	}
	outb(base + UART_THR, (uint8_t)c);
}

void serial_puts(const char *s)
{
	if (!console_serial)
		return;
	for (; *s; s++) {
		if (*s == '\n')
			serial_putc_raw('\r');
		serial_putc_raw(*s);
	}
}

static const char hex_digits[] = "0123456789abcdef";

/* "0x" followed by the value in hex, without leading zeros. */
void serial_put_hex(uint64_t value)
{
	char buf[19];
	char *p = buf + sizeof(buf) - 1;

	*p = '\0';
	do {
		*--p = hex_digits[value & 15];
		value >>= 4;
	} while (value);
	*--p = 'x';
	*--p = '0';
	serial_puts(p);
}

/* Each byte as two hex digits, no separators. */
void serial_put_bytes_hex(const uint8_t *p, size_t len)
{
	char pair[3];

	pair[2] = '\0';
	while (len--) {
		pair[0] = hex_digits[*p >> 4];
		pair[1] = hex_digits[*p & 15];
		serial_puts(pair);
		p++;
	}
}
