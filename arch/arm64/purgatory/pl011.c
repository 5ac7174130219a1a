/*
 * Polled output on an Arm PL011 UART for the pykexec arm64 purgatory.
 *
 * The previous kernel (or firmware) has set the UART up as its console; this
 * only writes characters, never reprograms it.  The MMU is off, so the MMIO
 * accesses are Device memory as they must be.  "\n" goes out as "\r\n".
 */
#include "arch.h"

#define PL011_DR 0x00	/* data register */
#define PL011_FR 0x18	/* flag register */
#define PL011_FR_TXFF (1u << 5)	/* transmit FIFO full */

/* Give up waiting for room after this many polls (a UART that never drains). */
#define UART_SPIN_LIMIT 100000u

static inline uint32_t mmio_read32(uint64_t addr)
{
	return *(volatile uint32_t *)(uintptr_t)addr;
}

static inline void mmio_write32(uint64_t addr, uint32_t value)
{
	*(volatile uint32_t *)(uintptr_t)addr = value;
}

static void uart_putc(char c)
{
	uint32_t spins;

	for (spins = 0; spins < UART_SPIN_LIMIT; spins++) {
		if (!(mmio_read32(uart_base + PL011_FR) & PL011_FR_TXFF))
			break;
	}
	mmio_write32(uart_base + PL011_DR, (uint8_t)c);
}

void uart_puts(const char *s)
{
	if (!uart_base)
		return;
	for (; *s; s++) {
		if (*s == '\n')
			uart_putc('\r');
		uart_putc(*s);
	}
}

static const char hex_digits[] = "0123456789abcdef";

/* "0x" followed by the value in hex, without leading zeros. */
void uart_put_hex(uint64_t value)
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
	uart_puts(p);
}

/* Each byte as two hex digits, no separators. */
void uart_put_bytes_hex(const uint8_t *p, size_t len)
{
	char pair[3];

	pair[2] = '\0';
	while (len--) {
		pair[0] = hex_digits[*p >> 4];
		pair[1] = hex_digits[*p & 15];
		uart_puts(pair);
		p++;
	}
}
