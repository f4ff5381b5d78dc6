"""`FolderSource(check_all_frames=True)` reports an over-large frame (PIL's decompression-bomb
guard) as a `VideoError` naming the file, as reading that frame does, not as a PIL traceback."""
import numpy as np
import pytest
from PIL import Image

from threeam.errors import VideoError
from threeam.io.frame_sources import FolderSource


def test_a_decompression_bomb_frame_is_a_video_error_naming_it(tmp_path, monkeypatch):
    folder = tmp_path / "v"
    folder.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / "00000.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "00001.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 pixels > 2 x 100: PIL refuses to open it
    with pytest.raises(VideoError, match=r"00001\.png"):
        FolderSource(folder, check_all_frames=True)
    source = FolderSource(folder)  # without the check: when that frame is read
    with pytest.raises(VideoError, match=r"00001\.png"):
        source.read(1)
