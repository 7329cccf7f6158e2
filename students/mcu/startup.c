/* Minimal Cortex-M4 start-up for the MPS2-AN386 test firmware (QEMU `-M mps2-an386`): the vector
 * table, a reset handler that copies .data from flash, zeroes .bss, opens newlib's semihosting
 * streams (librdimon, `--specs=rdimon.specs`) and runs main(), and a fault handler that reports
 * through semihosting and exits, so a crashing test program ends QEMU instead of hanging it.
 * Link with mps2_an386.ld and -nostartfiles. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void Fault_Handler(void);

void Reset_Handler(void) {
  uint32_t *src = &_sidata;
  for (uint32_t *dst = &_sdata; dst < &_edata;) *dst++ = *src++;
  for (uint32_t *dst = &_sbss; dst < &_ebss;) *dst++ = 0;
  initialise_monitor_handles();
  exit(main());
}

void Fault_Handler(void) {
  printf("EDGEFL_FAULT\n");
  exit(3);
}

/* Initial SP, reset, NMI, HardFault, MemManage, BusFault, UsageFault; the rest are unused. */
__attribute__((section(".isr_vector"), used)) static void (*const vector_table[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler,              Fault_Handler, Fault_Handler, 0,
    0,                          0,             0,             Fault_Handler,
    Fault_Handler,              0,             Fault_Handler, Fault_Handler,
};
