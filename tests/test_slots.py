"""Execution slots: never oversubscribed; a CPU job sees no GPU; a GPU job sees its own only."""

from __future__ import annotations

import threading
import time

from autograder.executors.slots import Slot, SlotPool, visible_gpus


def test_gpu_slots_spread_jobs_over_gpus():
    uuids = {0: "GPU-aaaa", 1: "GPU-bbbb"}
    pool = SlotPool.for_machine(gpus=[0, 1], jobs_per_gpu=3, uuids=uuids)
    assert len(pool) == 6
    assert sorted(s.gpu for s in pool.slots) == [0, 0, 0, 1, 1, 1]
    assert all(abs(s.gpu_share - 1 / 3) < 1e-9 for s in pool.slots)
    slot = pool.slots[4]
    # The UUID names the GPU whatever CUDA's numbering; inside the sandbox its only node is index 0.
    assert slot.device_nodes == ["/dev/nvidia1"] and slot.environment == {"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}
    without_uuid = SlotPool.for_machine(gpus=[3], uuids={}).slots[0]
    assert without_uuid.device_nodes == ["/dev/nvidia3"] and without_uuid.environment == {"CUDA_VISIBLE_DEVICES": "0"}


def test_gpu_uuids_come_from_the_driver_files(tmp_path):
    from autograder.executors.gpus import gpu_uuids

    for bus, minor, uuid in (("0000:17:00.0", 0, "GPU-1d2c"), ("0000:65:00.0", 3, "GPU-9f0e")):
        (tmp_path / bus).mkdir()
        (tmp_path / bus / "information").write_text(
            f"Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 0\nGPU UUID: \t {uuid}\n"
            f"Video BIOS: \t 96.00.99.00.01\nBus Type: \t PCIe\nDMA Size: \t 52 bits\nDevice Minor: \t {minor}\n"
        )
    assert gpu_uuids(tmp_path) == {0: "GPU-1d2c", 3: "GPU-9f0e"}
    assert gpu_uuids(tmp_path / "absent") == {}


def test_cpu_slots_see_no_gpu():
    pool = SlotPool.for_machine(gpus=[], cpu_jobs=3)
    assert len(pool) == 3
    assert all(
        s.gpu is None and s.device_nodes == [] and s.environment == {"CUDA_VISIBLE_DEVICES": ""} for s in pool.slots
    )


def test_no_slot_is_ever_held_twice():
    pool = SlotPool.for_machine(gpus=[0, 1], jobs_per_gpu=2)
    held, lock, peak, errors = set(), threading.Lock(), [0], []

    def job():
        with pool.acquire() as slot:
            with lock:
                if slot.index in held:
                    errors.append(slot.index)
                held.add(slot.index)
                peak[0] = max(peak[0], len(held))
            time.sleep(0.01)
            with lock:
                held.discard(slot.index)

    threads = [threading.Thread(target=job) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and peak[0] <= 4 and held == set()


def test_visible_gpus_reads_device_nodes(tmp_path):
    for name in ("nvidia0", "nvidia3", "nvidiactl", "nvidia-uvm", "null"):
        (tmp_path / name).touch()
    assert visible_gpus(tmp_path) == [0, 3]
    assert Slot(0, 3).device_nodes == ["/dev/nvidia3"]
