module trio-foundation/porcupine-harness

go 1.16

require github.com/anishathalye/porcupine v1.3.1
