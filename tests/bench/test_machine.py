import platform

from swansphere.bench.machine import cpu_description, cpu_model

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu avx512f

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
"""


def test_cpu_model_reads_the_model_name_line():
    assert cpu_model(CPUINFO) == "Intel(R) Xeon(R) Platinum 8480+"


def test_cpu_model_without_a_model_name_falls_back_to_platform():
    # Some ARM kernels list no "model name"; an empty one says nothing either.
    expected = platform.processor() or platform.machine()
    assert cpu_model("processor\t: 0\nBogoMIPS\t: 50.00\n") == expected
    assert cpu_model("model name\t:   \n") == expected


def test_cpu_description_names_the_machine_and_the_vector_instructions():
    text = cpu_description("AVX512")
    assert text == f"{cpu_model()} ({platform.machine()}, AVX512)"
    assert cpu_description() == f"{cpu_model()} ({platform.machine()})"
