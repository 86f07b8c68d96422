"""Giving the decoding processes' slots back, in one place: a process fills a slot only once it has
it back, so a slot kept too long stalls its process, and one given back too early is overwritten
while its pixels are read."""
from video_features.utils.frames.device_feed import DeviceFeed
from video_features.utils.video.pool import DecoderPool

NO_SLOT = -1  # a message whose frames have no pixels came without a slot


class SlotReturns:
    def __init__(self, pool: DecoderPool, feed: DeviceFeed):
        self.pool, self.feed = pool, feed

    def unused(self, worker: int, slot: int) -> None:
        """A slot nothing reads (a video given up meanwhile, or frames without pixels): back at once."""
        if slot != NO_SLOT:
            self.pool.release(worker, slot)

    def preprocessed(self, worker: int, slot: int) -> None:
        """A slot whose preprocessing has been queued: on a CPU it is done, so the slot goes back now;
        on CUDA once its copy to the device is done (``copied``)."""
        if not self.feed.cuda:
            self.pool.release(worker, slot)

    def copied(self, wait: bool = False) -> None:
        """Gives back the slots whose copies to the device are done (with ``wait``: all, waiting)."""
        for worker, slot in self.feed.releasable(wait):
            self.pool.release(worker, slot)

    def forget(self, worker: int) -> None:
        """A process died: its replacement starts with every slot free."""
        self.feed.forget(worker)
