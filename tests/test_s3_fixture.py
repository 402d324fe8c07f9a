"""The S3 test server is reachable over HTTP by both s3fs and pyarrow's S3FileSystem."""

from pyarrow import fs as pafs


def test_s3fs_and_pyarrow_share_the_server(s3_endpoint, s3_bucket, s3):
    s3.pipe(f"{s3_bucket}/hello.txt", b"hello")
    pa_fs = s3_endpoint.pyarrow_fs()
    info = pa_fs.get_file_info(f"{s3_bucket}/hello.txt")
    assert info.type == pafs.FileType.File and info.size == 5
    with pa_fs.open_input_file(f"{s3_bucket}/hello.txt") as f:
        assert f.read() == b"hello"
