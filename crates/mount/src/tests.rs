use super::*;

const MOUNTINFO: &str = "\
22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
61 22 0:52 / /tmp/a\\040b/mnt rw,nosuid,nodev,noatime shared:30 - fuse.dfs dfs:/ rw,user_id=0,group_id=0
62 22 0:53 / /tmp/x/mnt rw,nosuid,nodev,noatime shared:31 - fuse.dfs dfs:/home rw,user_id=0,group_id=0
63 62 0:54 / /tmp/x/mnt rw,nosuid,nodev,noatime shared:32 - fuse.dfs dfs:/home/ann rw,user_id=0,group_id=0
";

#[test]
fn the_device_of_a_mount_is_that_of_its_last_line_with_spaces_escaped() {
    assert_eq!(
        mount_device(MOUNTINFO, Path::new("/tmp/x/mnt")).as_deref(),
        Some("0:54")
    );
    assert_eq!(
        mount_device(MOUNTINFO, Path::new("/tmp/a b/mnt")).as_deref(),
        Some("0:52")
    );
    assert_eq!(mount_device(MOUNTINFO, Path::new("/")).as_deref(), Some("253:0"));
    assert_eq!(mount_device(MOUNTINFO, Path::new("/tmp/x")), None);
    assert_eq!(mount_device("", Path::new("/tmp/x/mnt")), None);
}
